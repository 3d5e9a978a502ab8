/* safetensors.c - a validating reader and an F32 writer for the safetensors format.
 *
 * Layout of a file: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the
 * data buffer. Every check of the reference reader (huggingface/safetensors, tensor.rs
 * read_metadata + validate) is done before a tensor is handed out, plus a few stricter ones
 * (the reference accepts them only by accident of serde): a raw control byte or an escaped
 * NUL anywhere in the header, duplicate tensor names, a duplicate "__metadata__" and a
 * duplicate "dtype"/"shape"/"data_offsets" field are all rejected.
 *
 * Numbers in the header go through cJSON, which stores them as doubles, so dimensions and
 * offsets above 2^53 are rejected as too large (no real file comes near that; the reference
 * would accept them only for zero-size tensors). */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "safetensors.h"

#include "fs.h"
#include "json.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this loader hands out raw pointers and assumes a little-endian host"
#endif

#define ST_MAX_HEADER 100000000ull   /* the reference's MAX_HEADER_SIZE */
#define ST_MAX_EXACT 9007199254740992.0 /* 2^53: largest integer range a double holds exactly */
#define ST_NAME_FMT "%.200s"         /* names in messages are cut so the file name still fits */

struct pd_st_file {
    const uint8_t *base; /* whole file: mmap'd (mapped = 1) or malloc'd */
    size_t size;
    int mapped;
    char *strings;             /* arena holding every tensor name and metadata key/value */
    pd_st_tensor *tensors;     /* (count) sorted by data offset */
    const pd_st_tensor **by_name; /* (count) sorted by strcmp of name, for pd_st_find */
    int count;
    const char **meta;         /* (2 * n_meta) key, value, key, value, ... */
    int n_meta;
};

/* ==== dtypes ==== */

static const struct {
    const char *name;
    pd_dtype dt;
    size_t size;
} st_dtypes[] = {
    {"F32", PD_DT_F32, 4}, {"F16", PD_DT_F16, 2}, {"BF16", PD_DT_BF16, 2}, {"F64", PD_DT_F64, 8},
    {"I64", PD_DT_I64, 8}, {"I32", PD_DT_I32, 4}, {"I16", PD_DT_I16, 2},   {"I8", PD_DT_I8, 1},
    {"U8", PD_DT_U8, 1},   {"BOOL", PD_DT_BOOL, 1},
};
#define ST_N_DTYPES ((int)(sizeof(st_dtypes) / sizeof(st_dtypes[0])))

const char *pd_dtype_name(pd_dtype d) {
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (st_dtypes[i].dt == d) return st_dtypes[i].name;
    return "?";
}

size_t pd_dtype_size(pd_dtype d) {
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (st_dtypes[i].dt == d) return st_dtypes[i].size;
    return 0;
}

static int st_dtype_parse(const char *s, pd_dtype *out) {
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (strcmp(st_dtypes[i].name, s) == 0) {
            *out = st_dtypes[i].dt;
            return 0;
        }
    return -1;
}

int64_t pd_st_numel(const pd_st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i]; /* no overflow: validated at open */
    return n;
}

/* Product of shape[0..ndim) into *out; -1 if it exceeds INT64_MAX. Dims must be >= 0. */
static int st_shape_numel(const int64_t *shape, int ndim, int64_t *out) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] != 0 && n > INT64_MAX / shape[i]) return -1;
        n *= shape[i];
    }
    *out = n;
    return 0;
}

/* ==== half precision ==== */

float pd_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: renormalise into a normal float */
            uint32_t e = 113;
            while (!(mant & 0x400)) {
                mant <<= 1;
                e--;
            }
            bits = sign | (e << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13); /* inf, or NaN with its payload */
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float pd_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t pd_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) { /* inf, or NaN kept quiet with the top payload bits */
        if (x == 0x7f800000u) return sign | 0x7c00;
        return (uint16_t)(sign | 0x7e00 | ((x >> 13) & 0x3ff));
    }
    if (x >= 0x477ff000u) return sign | 0x7c00; /* >= 65520 rounds (to even) past 65504 */
    if (x < 0x38800000u) {                      /* below 2^-14: half subnormal or zero */
        if (x <= 0x33000000u) return sign;      /* <= 2^-25: halfway to 2^-24 rounds to 0 */
        uint32_t e = x >> 23, m = (x & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* value / 2^-24 = m * 2^(e-126); 14 <= shift <= 24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t h = (((x >> 23) - 112) << 10) | ((x & 0x7fffff) >> 13);
    uint32_t rem = x & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* carry into the exponent is right */
    return (uint16_t)(sign | h);
}

uint16_t pd_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ==== header validation ==== */

/* Length of the well-formed UTF-8 sequence starting a non-ASCII byte at s (avail bytes
 * readable), or 0 if it is malformed: overlong forms, surrogates U+D800..DFFF and anything
 * above U+10FFFF are all rejected (RFC 3629 table). */
static size_t st_utf8_seq(const uint8_t *s, size_t avail) {
    uint8_t c = s[0], lo = 0x80, hi = 0xbf; /* allowed range of the first continuation byte */
    size_t len;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c == 0xe0) len = 3, lo = 0xa0;
    else if (c >= 0xe1 && c <= 0xec) len = 3;
    else if (c == 0xed) len = 3, hi = 0x9f;
    else if (c >= 0xee && c <= 0xef) len = 3;
    else if (c == 0xf0) len = 4, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3) len = 4;
    else if (c == 0xf4) len = 4, hi = 0x8f;
    else return 0;
    if (len > avail) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < len; k++)
        if (s[k] < 0x80 || s[k] > 0xbf) return 0;
    return len;
}

/* Checks that the header is well-formed UTF-8 (no overlong forms, no surrogates, nothing
 * above U+10FFFF), has no raw control byte other than JSON whitespace (strict JSON allows
 * none, and an embedded NUL would cut names short), and no \u0000 escape inside a string.
 * Returns 0, or -1 with a message in msg. */
static int st_check_header_bytes(const uint8_t *s, size_t n, char *msg, size_t msglen) {
    int in_str = 0;
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
                snprintf(msg, msglen, "header has control byte 0x%02x at offset %zu", c, i);
                return -1;
            }
            if (in_str && c == '\\') {
                if (i + 5 < n && memcmp(s + i + 1, "u0000", 5) == 0) {
                    snprintf(msg, msglen, "header has an escaped NUL (\\u0000) at offset %zu", i);
                    return -1;
                }
                /* Skip the escaped char if it is printable ASCII (all valid escapes are); any
                 * other byte is left for the checks above and below. */
                i += (i + 1 < n && s[i + 1] >= 0x20 && s[i + 1] < 0x7f) ? 2 : 1;
                continue;
            }
            if (c == '"') in_str = !in_str;
            i++;
            continue;
        }
        size_t len = st_utf8_seq(s + i, n - i);
        if (!len) {
            snprintf(msg, msglen, "header is not valid UTF-8 (byte 0x%02x at offset %zu)", c, i);
            return -1;
        }
        i += len;
    }
    return 0;
}

/* Reads a JSON number that must be a non-negative integer <= 2^53. Returns 0, or -1 with
 * what is wrong in msg. */
static int st_json_uint(const cJSON *v, uint64_t *out, char *msg, size_t msglen) {
    if (!cJSON_IsNumber(v)) {
        snprintf(msg, msglen, "is not a number");
        return -1;
    }
    double d = v->valuedouble;
    if (d != d) {
        snprintf(msg, msglen, "is not a number");
        return -1;
    }
    if (d < 0) {
        snprintf(msg, msglen, "is negative (%.0f)", d);
        return -1;
    }
    if (d > ST_MAX_EXACT) {
        snprintf(msg, msglen, "is too large (%g > 2^53)", d);
        return -1;
    }
    if ((double)(uint64_t)d != d) {
        snprintf(msg, msglen, "is not an integer (%g)", d);
        return -1;
    }
    *out = (uint64_t)d;
    return 0;
}

/* One parsed tensor entry before sorting. */
typedef struct {
    const char *name; /* into the cJSON tree until copied into the arena */
    uint64_t begin, end;
    pd_st_tensor t;
} st_entry;

static int st_cmp_offset(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int st_cmp_name(const void *a, const void *b) {
    const pd_st_tensor *x = *(const pd_st_tensor *const *)a, *y = *(const pd_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Formats shape as "[2,3]" into buf. */
static void st_fmt_shape(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? "," : "", shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* Validates one tensor entry of the header and fills e (except data, which needs the data
 * start). fname names the file in messages. */
static pd_status st_parse_entry(const char *fname, const cJSON *item, st_entry *e, char *err,
                                size_t errlen) {
    const char *name = item->string;
    char msg[160];
    if (!cJSON_IsObject(item))
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: tensor '" ST_NAME_FMT "': entry is not an object",
                      fname, name);
    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *c = item->child; c; c = c->next) {
        const cJSON **slot = strcmp(c->string, "dtype") == 0          ? &dtype
                             : strcmp(c->string, "shape") == 0        ? &shape
                             : strcmp(c->string, "data_offsets") == 0 ? &offs
                                                                      : NULL;
        if (!slot) continue; /* unknown fields are ignored, as serde does */
        if (*slot)
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: tensor '" ST_NAME_FMT "': duplicate field '%s'",
                          fname, name, c->string);
        *slot = c;
    }
    if (!dtype || !shape || !offs)
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: tensor '" ST_NAME_FMT "': missing field '%s'", fname,
                      name, !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    if (!cJSON_IsString(dtype))
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: tensor '" ST_NAME_FMT "': dtype is not a string",
                      fname, name);
    memset(e, 0, sizeof(*e));
    e->name = name;
    if (st_dtype_parse(dtype->valuestring, &e->t.dtype) != 0)
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: unknown dtype %.40s for tensor '" ST_NAME_FMT "'",
                      fname, dtype->valuestring, name);

    if (!cJSON_IsArray(shape))
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: tensor '" ST_NAME_FMT "': shape is not an array",
                      fname, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > PD_ST_MAX_DIMS)
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: tensor '" ST_NAME_FMT "': %d dims, at most %d supported",
                      fname, name, ndim, PD_ST_MAX_DIMS);
    e->t.ndim = ndim;
    int d = 0;
    for (const cJSON *c = shape->child; c; c = c->next, d++) {
        uint64_t v;
        if (st_json_uint(c, &v, msg, sizeof(msg)) != 0)
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: tensor '" ST_NAME_FMT "': shape dim %d %s", fname,
                          name, d, msg);
        e->t.shape[d] = (int64_t)v;
    }

    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return pd_err(err, errlen, PD_ERR_FORMAT,
                      "%s: tensor '" ST_NAME_FMT "': data_offsets is not an array [begin, end]", fname, name);
    if (st_json_uint(offs->child, &e->begin, msg, sizeof(msg)) != 0)
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: tensor '" ST_NAME_FMT "': data_offsets begin %s", fname,
                      name, msg);
    if (st_json_uint(offs->child->next, &e->end, msg, sizeof(msg)) != 0)
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: tensor '" ST_NAME_FMT "': data_offsets end %s", fname,
                      name, msg);
    if (e->begin > e->end)
        return pd_err(err, errlen, PD_ERR_FORMAT,
                      "%s: tensor '" ST_NAME_FMT "': data_offsets [%" PRIu64 ", %" PRIu64 "] has begin > end",
                      fname, name, e->begin, e->end);

    char sbuf[200];
    st_fmt_shape(sbuf, sizeof(sbuf), e->t.shape, ndim);
    int64_t numel;
    size_t dsize = pd_dtype_size(e->t.dtype);
    if (st_shape_numel(e->t.shape, ndim, &numel) != 0 || numel > INT64_MAX / (int64_t)dsize)
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: tensor '" ST_NAME_FMT "': shape %s x %s overflows",
                      fname, name, sbuf, pd_dtype_name(e->t.dtype));
    uint64_t need = (uint64_t)numel * dsize;
    if (e->end - e->begin != need)
        return pd_err(err, errlen, PD_ERR_FORMAT,
                      "%s: tensor '" ST_NAME_FMT "': data_offsets [%" PRIu64 ", %" PRIu64 "] but shape %s x %s "
                      "needs %" PRIu64 " bytes",
                      fname, name, e->begin, e->end, sbuf, pd_dtype_name(e->t.dtype), need);
    e->t.nbytes = (size_t)need;
    return PD_OK;
}

static size_t st_strsize(const char *s) { return strlen(s) + 1; }

/* Copies s into the arena at *pos and returns the copy. */
static const char *st_arena_put(char *arena, size_t *pos, const char *s) {
    size_t n = strlen(s) + 1;
    memcpy(arena + *pos, s, n);
    const char *r = arena + *pos;
    *pos += n;
    return r;
}

/* Validates the bytes base[0..size) as a safetensors file and fills f's index. f->base and
 * f->size are already set; on failure the caller frees f with pd_st_close. */
static pd_status st_index(pd_st_file *f, const char *fname, char *err, size_t errlen) {
    const uint8_t *b = f->base;
    size_t size = f->size;
    if (size < 8)
        return pd_err(err, errlen, PD_ERR_FORMAT,
                      "%s: file is %zu bytes, too small to hold the 8-byte header length", fname, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
    if (n > ST_MAX_HEADER)
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: header length %" PRIu64 " is too large (limit %llu)",
                      fname, n, ST_MAX_HEADER);
    if (n > size - 8)
        return pd_err(err, errlen, PD_ERR_FORMAT,
                      "%s: header length %" PRIu64 " is larger than the file (%zu bytes after the length)",
                      fname, n, size - 8);
    if (n == 0 || b[8] != '{')
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: header does not start with '{'", fname);
    const uint8_t *hdr = b + 8;
    char msg[160];
    if (st_check_header_bytes(hdr, (size_t)n, msg, sizeof(msg)) != 0)
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: %s", fname, msg);

    /* cJSON gets a NUL-terminated copy so that nothing can read past the header. */
    char *text = malloc((size_t)n + 1);
    if (!text) return pd_err(err, errlen, PD_ERR_NOMEM, "%s: out of memory for the header", fname);
    memcpy(text, hdr, (size_t)n);
    text[n] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0;
        pd_status why = pd_json_parse_failure(text, (size_t)n);
        free(text);
        if (why == PD_ERR_NOMEM) return pd_err(err, errlen, why, "%s: out of memory parsing the header", fname);
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: header is not valid JSON (error near byte %zu)", fname,
                      at);
    }
    size_t rest = (size_t)(end - text);
    while (rest < n && (text[rest] == ' ' || text[rest] == '\t' || text[rest] == '\n' || text[rest] == '\r'))
        rest++;
    pd_status st = PD_OK;
    st_entry *ents = NULL;
    if (rest != n) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: header is not valid JSON (trailing bytes at %zu)", fname,
                    rest);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: header is not a JSON object", fname);
        goto done;
    }

    /* First pass: metadata, counts and arena size. */
    const cJSON *meta = NULL;
    int nt = 0;
    size_t arena = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (meta) {
                st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: duplicate __metadata__", fname);
                goto done;
            }
            if (!cJSON_IsObject(c)) {
                st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: __metadata__ is not an object", fname);
                goto done;
            }
            meta = c;
            for (const cJSON *m = c->child; m; m = m->next) {
                if (!cJSON_IsString(m)) {
                    st = pd_err(err, errlen, PD_ERR_FORMAT,
                                "%s: __metadata__ value for '" ST_NAME_FMT "' is not a string", fname, m->string);
                    goto done;
                }
                arena += st_strsize(m->string) + st_strsize(m->valuestring);
                f->n_meta++;
            }
        } else {
            if (nt == INT32_MAX) {
                st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: too many tensors", fname);
                goto done;
            }
            nt++;
            arena += st_strsize(c->string);
        }
    }

    ents = calloc(nt ? (size_t)nt : 1, sizeof(*ents));
    f->tensors = calloc(nt ? (size_t)nt : 1, sizeof(*f->tensors));
    f->by_name = calloc(nt ? (size_t)nt : 1, sizeof(*f->by_name));
    f->meta = calloc(f->n_meta ? 2 * (size_t)f->n_meta : 1, sizeof(*f->meta));
    f->strings = malloc(arena ? arena : 1);
    if (!ents || !f->tensors || !f->by_name || !f->meta || !f->strings) {
        st = pd_err(err, errlen, PD_ERR_NOMEM, "%s: out of memory indexing %d tensors", fname, nt);
        goto done;
    }

    /* Second pass: each tensor entry on its own. */
    int k = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c == meta) continue;
        if ((st = st_parse_entry(fname, c, &ents[k], err, errlen)) != PD_OK) goto done;
        k++;
    }

    /* Offsets: sorted by begin, they must tile [0, data size) exactly. */
    qsort(ents, (size_t)nt, sizeof(*ents), st_cmp_offset);
    uint64_t data_len = (uint64_t)(size - 8) - n, pos = 0;
    for (int i = 0; i < nt; i++) {
        const st_entry *e = &ents[i];
        if (e->begin != pos) {
            const char *what = i == 0 ? "offsets do not start at 0"
                               : e->begin > pos ? "gap after the previous tensor"
                                                : "overlaps the previous tensor";
            st = pd_err(err, errlen, PD_ERR_FORMAT,
                        "%s: tensor '" ST_NAME_FMT "': data_offsets [%" PRIu64 ", %" PRIu64 "]: %s (expected begin %"
                        PRIu64 ")",
                        fname, e->name, e->begin, e->end, what, pos);
            goto done;
        }
        pos = e->end;
    }
    if (pos < data_len) {
        st = pd_err(err, errlen, PD_ERR_FORMAT,
                    "%s: %" PRIu64 " trailing bytes after the last tensor (data is %" PRIu64 " bytes, tensors end at %"
                    PRIu64 ")",
                    fname, data_len - pos, data_len, pos);
        goto done;
    }
    if (pos > data_len) {
        st = pd_err(err, errlen, PD_ERR_FORMAT,
                    "%s: file is truncated: tensors end at %" PRIu64 " but the data is only %" PRIu64 " bytes",
                    fname, pos, data_len);
        goto done;
    }

    /* Commit: copy names into the arena, point tensors at their data, build the name index. */
    size_t apos = 0;
    const uint8_t *data = b + 8 + n;
    for (int i = 0; i < nt; i++) {
        f->tensors[i] = ents[i].t;
        f->tensors[i].name = st_arena_put(f->strings, &apos, ents[i].name);
        f->tensors[i].data = data + ents[i].begin;
        f->by_name[i] = &f->tensors[i];
    }
    f->count = nt;
    qsort(f->by_name, (size_t)nt, sizeof(*f->by_name), st_cmp_name);
    for (int i = 1; i < nt; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0) {
            st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: duplicate tensor name '" ST_NAME_FMT "'", fname,
                        f->by_name[i]->name);
            goto done;
        }
    int mi = 0;
    if (meta)
        for (const cJSON *m = meta->child; m; m = m->next, mi++) {
            f->meta[2 * mi] = st_arena_put(f->strings, &apos, m->string);
            f->meta[2 * mi + 1] = st_arena_put(f->strings, &apos, m->valuestring);
        }
    PD_ASSERT(apos == arena);

done:
    free(ents);
    cJSON_Delete(root);
    free(text);
    return st;
}

/* ==== open / close / lookup ==== */

pd_status pd_st_open(const char *path, pd_st_file **out, char *err, size_t errlen) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return pd_err(err, errlen, PD_ERR_NOT_FOUND, "%s: no such file", path);
        return pd_err(err, errlen, PD_ERR_IO, "%s: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return pd_err(err, errlen, PD_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) { /* also keeps mmap away from an empty file */
        close(fd);
        return pd_err(err, errlen, PD_ERR_FORMAT,
                      "%s: file is %zu bytes, too small to hold the 8-byte header length", path, size);
    }
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int mmap_errno = errno;
    close(fd);
    if (p == MAP_FAILED) return pd_err(err, errlen, PD_ERR_IO, "%s: mmap: %s", path, strerror(mmap_errno));
    pd_st_file *f = calloc(1, sizeof(*f));
    if (!f) {
        munmap(p, size);
        return pd_err(err, errlen, PD_ERR_NOMEM, "%s: out of memory", path);
    }
    f->base = p;
    f->size = size;
    f->mapped = 1;
    pd_status st = st_index(f, path, err, errlen);
    if (st != PD_OK) {
        pd_st_close(f);
        return st;
    }
    *out = f;
    return PD_OK;
}

pd_status pd_st_open_buffer(const void *buf, size_t len, pd_st_file **out, char *err, size_t errlen) {
    const char *fname = "<buffer>";
    *out = NULL;
    if (len < 8)
        return pd_err(err, errlen, PD_ERR_FORMAT,
                      "%s: file is %zu bytes, too small to hold the 8-byte header length", fname, len);
    pd_st_file *f = calloc(1, sizeof(*f));
    uint8_t *copy = malloc(len);
    if (!f || !copy) {
        free(f);
        free(copy);
        return pd_err(err, errlen, PD_ERR_NOMEM, "%s: out of memory copying %zu bytes", fname, len);
    }
    memcpy(copy, buf, len);
    f->base = copy;
    f->size = len;
    pd_status st = st_index(f, fname, err, errlen);
    if (st != PD_OK) {
        pd_st_close(f);
        return st;
    }
    *out = f;
    return PD_OK;
}

void pd_st_close(pd_st_file *f) {
    if (!f) return;
    if (f->mapped) munmap((void *)f->base, f->size);
    else free((void *)f->base);
    free(f->strings);
    free(f->tensors);
    free(f->by_name);
    free(f->meta);
    free(f);
}

void pd_st_release(const pd_st_file *f, const pd_st_tensor *t) {
    if (!f->mapped || !t->nbytes) return;
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)t->data, e = a + t->nbytes;
    a = (a + pg - 1) / pg * pg; /* whole pages inside the tensor only: its neighbours stay */
    e = e / pg * pg;
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED); /* advice: a failure only keeps the pages */
}

int pd_st_count(const pd_st_file *f) { return f->count; }

const pd_st_tensor *pd_st_at(const pd_st_file *f, int i) {
    PD_ASSERT(i >= 0 && i < f->count);
    return &f->tensors[i];
}

/* Binary search over the name-sorted index. */
const pd_st_tensor *pd_st_find(const pd_st_file *f, const char *name) {
    int lo = 0, hi = f->count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->by_name[mid]->name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const char *pd_st_metadata(const pd_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

/* ==== conversion ==== */

pd_status pd_st_to_f32(const pd_st_tensor *t, float **out, char *err, size_t errlen) {
    *out = NULL;
    if (t->dtype != PD_DT_F32 && t->dtype != PD_DT_F16 && t->dtype != PD_DT_BF16 && t->dtype != PD_DT_F64)
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "tensor '" ST_NAME_FMT "': dtype %s is not floating point",
                      t->name, pd_dtype_name(t->dtype));
    size_t n = (size_t)pd_st_numel(t);
    float *y = malloc(n ? n * sizeof(float) : 1);
    if (!y)
        return pd_err(err, errlen, PD_ERR_NOMEM, "tensor '" ST_NAME_FMT "': out of memory for %zu floats", t->name,
                      n);
    const uint8_t *p = t->data; /* unaligned: every element goes through memcpy */
    switch (t->dtype) {
    case PD_DT_F32:
        if (n) memcpy(y, p, n * 4);
        break;
    case PD_DT_F16:
    case PD_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            y[i] = t->dtype == PD_DT_F16 ? pd_f16_to_f32(h) : pd_bf16_to_f32(h);
        }
        break;
    case PD_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            y[i] = (float)d;
        }
        break;
    default:
        PD_ASSERT(0);
    }
    *out = y;
    return PD_OK;
}

/* ==== writer ==== */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} st_buf;

static void sb_put(st_buf *b, const void *s, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void sb_puts(st_buf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(st_buf *b, const char *fmt, ...) PD_PRINTF(2, 3);
static void sb_printf(st_buf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    PD_ASSERT(n >= 0 && (size_t)n < sizeof(tmp));
    sb_put(b, tmp, (size_t)n);
}

/* Appends s as a JSON string literal (s is valid UTF-8, checked by the caller). */
static void sb_json_str(st_buf *b, const char *s) {
    sb_puts(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"') sb_puts(b, "\\\"");
        else if (c == '\\') sb_puts(b, "\\\\");
        else if (c < 0x20) sb_printf(b, "\\u%04x", c);
        else sb_put(b, s, 1);
    }
    sb_puts(b, "\"");
}

/* Values of a writer tensor; its shape was validated by st_prepare. */
static size_t st_wnumel(const pd_st_wtensor *w) {
    int64_t numel = 0;
    int rc = st_shape_numel(w->shape, w->ndim, &numel);
    PD_ASSERT(rc == 0);
    return (size_t)numel;
}

/* Bytes of a writer tensor's F32 data. */
static size_t st_wbytes(const pd_st_wtensor *w) { return st_wnumel(w) * 4; }

/* Values [i0, i0 + n) of a writer tensor as stored half-precision words. */
static void st_half_chunk(const pd_st_wtensor *w, pd_dtype dt, size_t i0, size_t n, uint16_t *out) {
    for (size_t i = 0; i < n; i++)
        out[i] = dt == PD_DT_F16 ? pd_f32_to_f16(w->data[i0 + i]) : pd_f32_to_bf16(w->data[i0 + i]);
}

static int st_cmp_wname(const void *a, const void *b) {
    const pd_st_wtensor *x = *(const pd_st_wtensor *const *)a, *y = *(const pd_st_wtensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Checks that s is non-NULL valid UTF-8; returns 0 or -1. Control bytes are fine here (the
 * writer escapes them); only NUL cannot be written, and a C string cannot hold it anyway. */
static int st_valid_str(const char *s) {
    if (!s) return -1;
    const uint8_t *u = (const uint8_t *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t len = u[i] < 0x80 ? 1 : st_utf8_seq(u + i, n - i);
        if (!len) return -1;
        i += len;
    }
    return 0;
}

/* Validates the tensors and metadata, sorts the tensors by name into *order (malloc'd) and
 * builds the padded header (8-byte length included) in *hdr. */
static pd_status st_prepare(const pd_st_wtensor *t, int n, const char *const *meta_kv, int n_meta, pd_dtype dt,
                            const pd_st_wtensor ***order, st_buf *hdr, char *err, size_t errlen) {
    *order = NULL;
    memset(hdr, 0, sizeof(*hdr));
    if (n < 0 || n_meta < 0 || (n > 0 && !t) || (n_meta > 0 && !meta_kv))
        return pd_err(err, errlen, PD_ERR_INVALID, "safetensors write: bad tensor or metadata count");
    const pd_st_wtensor **o = malloc(n ? (size_t)n * sizeof(*o) : 1);
    if (!o) return pd_err(err, errlen, PD_ERR_NOMEM, "safetensors write: out of memory");
    for (int i = 0; i < n; i++) {
        const pd_st_wtensor *w = &t[i];
        int64_t numel;
        if (st_valid_str(w->name) != 0 || strcmp(w->name, "__metadata__") == 0) {
            free(o);
            return pd_err(err, errlen, PD_ERR_INVALID, "safetensors write: tensor %d has an invalid name", i);
        }
        int bad = w->ndim < 0 || w->ndim > PD_ST_MAX_DIMS;
        for (int d = 0; !bad && d < w->ndim; d++)
            if (w->shape[d] < 0 || (double)w->shape[d] > ST_MAX_EXACT) bad = 1;
        if (bad || st_shape_numel(w->shape, w->ndim, &numel) != 0 || numel > INT64_MAX / 4 ||
            (numel > 0 && !w->data)) {
            free(o);
            return pd_err(err, errlen, PD_ERR_INVALID, "safetensors write: tensor '" ST_NAME_FMT "' has a bad shape",
                          w->name);
        }
        o[i] = w;
    }
    qsort(o, (size_t)n, sizeof(*o), st_cmp_wname);
    for (int i = 1; i < n; i++)
        if (strcmp(o[i - 1]->name, o[i]->name) == 0) {
            const char *name = o[i]->name;
            free(o);
            return pd_err(err, errlen, PD_ERR_INVALID, "safetensors write: duplicate tensor name '" ST_NAME_FMT "'",
                          name);
        }
    for (int i = 0; i < n_meta; i++) {
        int bad = st_valid_str(meta_kv[2 * i]) != 0 || st_valid_str(meta_kv[2 * i + 1]) != 0;
        for (int j = 0; !bad && j < i; j++)
            if (strcmp(meta_kv[2 * j], meta_kv[2 * i]) == 0) bad = 1;
        if (bad) {
            free(o);
            return pd_err(err, errlen, PD_ERR_INVALID, "safetensors write: metadata entry %d is invalid or duplicate",
                          i);
        }
    }

    sb_put(hdr, "\0\0\0\0\0\0\0\0", 8); /* length, patched below */
    sb_puts(hdr, "{");
    if (n_meta > 0) {
        sb_puts(hdr, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_puts(hdr, ",");
            sb_json_str(hdr, meta_kv[2 * i]);
            sb_puts(hdr, ":");
            sb_json_str(hdr, meta_kv[2 * i + 1]);
        }
        sb_puts(hdr, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const pd_st_wtensor *w = o[i];
        uint64_t nb = st_wnumel(w) * pd_dtype_size(dt);
        if (i || n_meta > 0) sb_puts(hdr, ",");
        sb_json_str(hdr, w->name);
        sb_printf(hdr, ":{\"dtype\":\"%s\",\"shape\":[", pd_dtype_name(dt));
        for (int d = 0; d < w->ndim; d++) sb_printf(hdr, "%s%" PRId64, d ? "," : "", w->shape[d]);
        sb_printf(hdr, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + nb);
        off += nb;
    }
    sb_puts(hdr, "}");
    while (!hdr->oom && hdr->len % 8) sb_puts(hdr, " "); /* sb_put adds nothing once out of memory */
    if (hdr->oom || hdr->len - 8 > ST_MAX_HEADER) {
        int oom = hdr->oom;
        free(o);
        free(hdr->p);
        memset(hdr, 0, sizeof(*hdr));
        return pd_err(err, errlen, oom ? PD_ERR_NOMEM : PD_ERR_TOO_LARGE,
                      oom ? "safetensors write: out of memory" : "safetensors write: header over 100 MB");
    }
    uint64_t hn = hdr->len - 8;
    for (int i = 0; i < 8; i++) hdr->p[i] = (char)((hn >> (8 * i)) & 0xff);
    *order = o;
    return PD_OK;
}

pd_status pd_st_write_buffer(const pd_st_wtensor *t, int n, const char *const *meta_kv, int n_meta,
                             char **out, size_t *len, char *err, size_t errlen) {
    *out = NULL;
    *len = 0;
    const pd_st_wtensor **o;
    st_buf b;
    pd_status st = st_prepare(t, n, meta_kv, n_meta, PD_DT_F32, &o, &b, err, errlen);
    if (st != PD_OK) return st;
    for (int i = 0; i < n; i++) {
        if (st_wbytes(o[i])) sb_put(&b, o[i]->data, st_wbytes(o[i]));
    }
    free(o);
    if (b.oom) {
        free(b.p);
        return pd_err(err, errlen, PD_ERR_NOMEM, "safetensors write: out of memory");
    }
    *out = b.p;
    *len = b.len;
    return PD_OK;
}

pd_status pd_st_write(const char *path, const pd_st_wtensor *t, int n, const char *const *meta_kv,
                      int n_meta, char *err, size_t errlen) {
    return pd_st_write_as(path, t, n, meta_kv, n_meta, PD_DT_F32, err, errlen);
}

pd_status pd_st_write_as(const char *path, const pd_st_wtensor *t, int n, const char *const *meta_kv, int n_meta,
                         pd_dtype dtype, char *err, size_t errlen) {
    if (dtype != PD_DT_F32 && dtype != PD_DT_F16 && dtype != PD_DT_BF16)
        return pd_err(err, errlen, PD_ERR_INVALID, "safetensors write: dtype %s is not F32, F16 or BF16", pd_dtype_name(dtype));
    const pd_st_wtensor **o;
    st_buf b;
    pd_status st = st_prepare(t, n, meta_kv, n_meta, dtype, &o, &b, err, errlen);
    if (st != PD_OK) return st;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = pd_err(err, errlen, PD_ERR_IO, "%s: %s", path, strerror(errno));
        free(o);
        free(b.p);
        return st;
    }
    /* F32 data goes straight from the caller's arrays to the file (no second copy); half
     * precision through a small buffer. */
    int bad = pd_fs_write_all(fd, b.p, b.len);
    for (int i = 0; !bad && i < n; i++) {
        const pd_st_wtensor *w = o[i];
        if (dtype == PD_DT_F32) {
            if (st_wbytes(w)) bad = pd_fs_write_all(fd, w->data, st_wbytes(w));
            continue;
        }
        uint16_t chunk[4096];
        for (size_t k = 0, numel = st_wnumel(w); !bad && k < numel; k += 4096) {
            size_t m = numel - k < 4096 ? numel - k : 4096;
            st_half_chunk(w, dtype, k, m, chunk);
            bad = pd_fs_write_all(fd, chunk, 2 * m);
        }
    }
    if (!bad) bad = fsync(fd);
    int saved = errno;
    if (close(fd) != 0 && !bad) {
        bad = -1;
        saved = errno;
    }
    free(o);
    free(b.p);
    if (bad) {
        unlink(path);
        return pd_err(err, errlen, PD_ERR_IO, "%s: write: %s", path, strerror(saved));
    }
    return PD_OK;
}
