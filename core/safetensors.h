/* safetensors.h - reading and writing the safetensors format (https://github.com/huggingface/safetensors).
 *
 * A file is validated the way the reference reader does before any tensor is handed out:
 * header length cap (100 MB), UTF-8 JSON header that is an object of tensors (+ optional
 * "__metadata__" string map), known dtypes, shapes with non-negative dims, byte size =
 * product(shape) x dtype size, data offsets contiguous from 0 with no gap or overlap,
 * file length exactly 8 + header + data. A failed check is PD_ERR_FORMAT with a message
 * naming the tensor and the problem.
 *
 * Ownership: pd_st_open maps the file read-only (PROT_READ, MAP_PRIVATE); tensors point into
 * the mapping and live until pd_st_close. pd_st_open_buffer copies the bytes it is given.
 * Thread-safety: an opened file is immutable; concurrent readers are fine.
 *
 * Details of this implementation (safetensors.c):
 * - Messages start with the path given to pd_st_open, or "<buffer>" for pd_st_open_buffer.
 * - pd_st_open fails with PD_ERR_NOT_FOUND (no such file), PD_ERR_IO (not a regular file,
 *   mmap failure), PD_ERR_FORMAT (any validation failure), PD_ERR_UNSUPPORTED (a dtype outside
 *   pd_dtype, or more than PD_ST_MAX_DIMS dims) or PD_ERR_NOMEM.
 * - Stricter than the reference: raw control bytes and \u0000 escapes in the header,
 *   duplicate tensor names, duplicate fields in an entry and a second "__metadata__" are
 *   rejected; dims and offsets above 2^53 are rejected (cJSON keeps numbers as doubles).
 *   Unknown fields inside a tensor entry are ignored, as serde does.
 * - A mapped file must not be truncated by another process while open (SIGBUS), as with any mmap.
 * - The writer sorts tensors by name (strcmp). The reference sorts by dtype alignment, then
 *   name; in a file of one dtype (all this writer makes) the two orders are the same. Writer failures:
 *   PD_ERR_INVALID (bad name/shape/metadata, duplicates), PD_ERR_NOMEM, PD_ERR_TOO_LARGE
 *   (header over 100 MB), PD_ERR_IO (pd_st_write removes the partial file). */
#ifndef PD_SAFETENSORS_H
#define PD_SAFETENSORS_H

#include "common.h"

typedef enum {
    PD_DT_F32, PD_DT_F16, PD_DT_BF16, PD_DT_F64,
    PD_DT_I64, PD_DT_I32, PD_DT_I16, PD_DT_I8, PD_DT_U8, PD_DT_BOOL,
} pd_dtype;

#define PD_ST_MAX_DIMS 8

typedef struct pd_st_tensor {
    const char *name;
    pd_dtype dtype;
    int ndim;
    int64_t shape[PD_ST_MAX_DIMS];
    const void *data; /* into the mapping; NOT necessarily aligned */
    size_t nbytes;
} pd_st_tensor;

typedef struct pd_st_file pd_st_file;

pd_status pd_st_open(const char *path, pd_st_file **out, char *err, size_t errlen);
pd_status pd_st_open_buffer(const void *buf, size_t len, pd_st_file **out, char *err, size_t errlen);
void pd_st_close(pd_st_file *f); /* NULL is a no-op */

/* The caller will not read t's bytes again (it converted them): the whole pages of the mapping
 * inside t are dropped from the process (MADV_DONTNEED; the file's page cache keeps them, and
 * a later read would fault them back in). Neighbouring tensors keep their pages. No-op for
 * pd_st_open_buffer files. */
void pd_st_release(const pd_st_file *f, const pd_st_tensor *t);

int pd_st_count(const pd_st_file *f);
const pd_st_tensor *pd_st_at(const pd_st_file *f, int i);              /* 0 <= i < count */
const pd_st_tensor *pd_st_find(const pd_st_file *f, const char *name); /* NULL if absent */
const char *pd_st_metadata(const pd_st_file *f, const char *key);      /* NULL if absent */

const char *pd_dtype_name(pd_dtype d); /* "F32", "BF16", ... */
size_t pd_dtype_size(pd_dtype d);
int64_t pd_st_numel(const pd_st_tensor *t);

/* Converts a floating tensor (F32, F16, BF16, F64) to a freshly malloc'd float array the
 * caller frees. PD_ERR_UNSUPPORTED for integer dtypes. */
pd_status pd_st_to_f32(const pd_st_tensor *t, float **out, char *err, size_t errlen);

/* A tensor to write: F32 data, shape. */
typedef struct pd_st_wtensor {
    const char *name;
    int ndim;
    int64_t shape[PD_ST_MAX_DIMS];
    const float *data;
} pd_st_wtensor;

/* Writes tensors (sorted by name in the header, as the reference writer does) plus optional
 * metadata (n_meta key/value string pairs) to path. Writes path directly; callers wanting
 * atomicity write to a temporary name and rename. Header padded with spaces to 8 bytes. */
pd_status pd_st_write(const char *path, const pd_st_wtensor *t, int n, const char *const *meta_kv,
                      int n_meta, char *err, size_t errlen);

/* pd_st_write storing every tensor as dtype: PD_DT_F32, or PD_DT_F16 / PD_DT_BF16 with each
 * value rounded to nearest even as it is written (PD_ERR_INVALID for other dtypes). */
pd_status pd_st_write_as(const char *path, const pd_st_wtensor *t, int n, const char *const *meta_kv, int n_meta,
                         pd_dtype dtype, char *err, size_t errlen);

/* Same, into a malloc'd buffer (*out, *len) the caller frees. */
pd_status pd_st_write_buffer(const pd_st_wtensor *t, int n, const char *const *meta_kv, int n_meta,
                             char **out, size_t *len, char *err, size_t errlen);

/* float <-> half helpers (round to nearest even), used by the loader and by tests. */
float pd_f16_to_f32(uint16_t h);
float pd_bf16_to_f32(uint16_t h);
uint16_t pd_f32_to_f16(float f);
uint16_t pd_f32_to_bf16(float f);

#endif
