/* common.h - status codes, assertions and small helpers shared by every module.
 *
 * Runtime failures return a pd_status (PD_OK = 0, negative on failure) and write
 * a human-readable message into a caller-supplied buffer (char *err, size_t errlen).
 * Broken invariants (bugs) abort through PD_ASSERT with file:line.
 * Everything here is thread-safe: there is no global error state. */
#ifndef PD_COMMON_H
#define PD_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef enum {
    PD_OK = 0,
    PD_ERR_INVALID = -1,     /* malformed input from the caller: bad JSON, wrong type, bad value */
    PD_ERR_NOT_FOUND = -2,   /* a named thing (file, tensor, adapter) does not exist */
    PD_ERR_FORMAT = -3,      /* a file exists but is corrupt, truncated or hostile */
    PD_ERR_UNSUPPORTED = -4, /* well-formed but not something peftd supports */
    PD_ERR_MISMATCH = -5,    /* does not fit the base model (shapes, architecture) */
    PD_ERR_NOMEM = -6,       /* allocation failed */
    PD_ERR_IO = -7,          /* read/write/mmap failed */
    PD_ERR_TOO_LARGE = -8,   /* exceeds a configured limit */
    PD_ERR_BUSY = -9,        /* queue full, try later */
    PD_ERR_CANCELLED = -10,  /* the operation was cancelled (or its service is shutting down) */
    PD_ERR_CONFLICT = -11,   /* conflicts with the state of the thing: already in progress, already ended */
} pd_status;

/* Short stable name of a status ("invalid_input", "not_found", ...). Never NULL. */
const char *pd_status_name(pd_status s);

#define PD_ASSERT(x)                                                                    \
    do {                                                                                \
        if (!(x)) {                                                                     \
            fprintf(stderr, "%s:%d: PD_ASSERT(%s) failed\n", __FILE__, __LINE__, #x);   \
            abort();                                                                    \
        }                                                                               \
    } while (0)

#if defined(__GNUC__)
#define PD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PD_PRINTF(a, b)
#endif

/* Writes a formatted message into err (if err != NULL && errlen > 0) and returns st. The
 * message is valid UTF-8: a byte that is not (where "%.40s" or errlen cut a character of an
 * echoed value, or the value was not UTF-8) becomes '?'.
 * Typical use: return pd_err(err, errlen, PD_ERR_FORMAT, "tensor %s: ...", name); */
pd_status pd_err(char *err, size_t errlen, pd_status st, const char *fmt, ...) PD_PRINTF(4, 5);

/* The offset of the first byte of s[0..n) that does not start a valid UTF-8 sequence (strict:
 * no overlong forms, surrogates or code points past U+10FFFF), or n when all of it is valid. */
size_t pd_utf8_check(const char *s, size_t n);

/* Reads a whole file into a malloc'd, NUL-terminated buffer. *len gets the byte count
 * (without the NUL). Fails with PD_ERR_NOT_FOUND, PD_ERR_IO or PD_ERR_TOO_LARGE (> max bytes). */
pd_status pd_read_file(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen);

/* Joins dir and name with a '/' into buf. Returns 0, or -1 if it does not fit. */
int pd_path_join(char *buf, size_t cap, const char *dir, const char *name);

/* Frees v[0..n) and v (an array of malloc'd strings); NULL is a no-op. */
void pd_strv_free(char **v, int n);
/* A malloc'd copy of v[0..n) (NULL entries become ""); NULL when n <= 0, v is NULL or out of
 * memory. */
char **pd_strv_dup(char *const *v, int n);

/* The word of words (NULL-terminated) closest to word, for "did you mean" in messages about
 * unknown names: the smallest optimal-string-alignment distance (insertions, deletions,
 * substitutions, adjacent swaps; case ignored), or 1 when one is a prefix of the other (4
 * characters at least); suggested only when that distance is at most 2 and at most half of
 * word's length. NULL when none is close, or word is in words. */
const char *pd_suggest(const char *word, const char *const *words);

/* Monotonic clock in seconds. */
double pd_now(void);

/* splitmix64 (Steele, Lea, Flood 2014), the one mixer of every seeded stream (weights of the
 * generated model, adapters' initial values and dropout, data orders, pretraining masks):
 * pd_mix64 is the output function of state x (the state advanced by the golden gamma, then
 * mixed); pd_splitmix64 advances *s and returns the next value. Pure, thread-safe. */
static inline uint64_t pd_mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
static inline uint64_t pd_splitmix64(uint64_t *s) {
    uint64_t x = *s;
    *s = x + 0x9E3779B97F4A7C15ull;
    return pd_mix64(x);
}

#endif
