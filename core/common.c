/* common.c - status names, error formatting, file reading, string arrays, suggestions, the clock. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

const char *pd_status_name(pd_status s) {
    switch (s) {
    case PD_OK: return "ok";
    case PD_ERR_INVALID: return "invalid_input";
    case PD_ERR_NOT_FOUND: return "not_found";
    case PD_ERR_FORMAT: return "bad_format";
    case PD_ERR_UNSUPPORTED: return "unsupported";
    case PD_ERR_MISMATCH: return "mismatch";
    case PD_ERR_NOMEM: return "out_of_memory";
    case PD_ERR_IO: return "io_error";
    case PD_ERR_TOO_LARGE: return "too_large";
    case PD_ERR_BUSY: return "busy";
    case PD_ERR_CANCELLED: return "cancelled";
    case PD_ERR_CONFLICT: return "conflict";
    }
    return "unknown";
}

pd_status pd_err(char *err, size_t errlen, pd_status st, const char *fmt, ...) {
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        size_t n = strlen(err);
        for (size_t i = pd_utf8_check(err, n); i < n; i += 1 + pd_utf8_check(err + i + 1, n - i - 1)) err[i] = '?';
    }
    return st;
}

size_t pd_utf8_check(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        unsigned lo = 0x80, hi = 0xBF; /* the range of the second byte (Unicode 15, table 3-7) */
        if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            if (c == 0xE0) lo = 0xA0;      /* overlong */
            else if (c == 0xED) hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            if (c == 0xF0) lo = 0x90;      /* overlong */
            else if (c == 0xF4) hi = 0x8F; /* past U+10FFFF */
        } else return i;
        if (i + k >= n) return i; /* truncated */
        if (u[i + 1] < lo || u[i + 1] > hi) return i;
        for (size_t j = 2; j <= k; j++)
            if ((u[i + j] & 0xC0) != 0x80) return i;
        i += k + 1;
    }
    return n;
}

pd_status pd_read_file(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen) {
    *out = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return pd_err(err, errlen, PD_ERR_NOT_FOUND, "%s: no such file", path);
        return pd_err(err, errlen, PD_ERR_IO, "%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return pd_err(err, errlen, PD_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max) {
        fclose(f);
        return pd_err(err, errlen, PD_ERR_TOO_LARGE, "%s: %lld bytes exceeds the limit of %zu",
                      path, (long long)st.st_size, max);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return pd_err(err, errlen, PD_ERR_NOMEM, "%s: out of memory", path);
    }
    if (n && fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return pd_err(err, errlen, PD_ERR_IO, "%s: short read", path);
    }
    fclose(f);
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return PD_OK;
}

int pd_path_join(char *buf, size_t cap, const char *dir, const char *name) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

void pd_strv_free(char **v, int n) {
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

char **pd_strv_dup(char *const *v, int n) {
    if (n <= 0 || !v) return NULL;
    char **d = calloc((size_t)n, sizeof *d);
    if (!d) return NULL;
    for (int i = 0; i < n; i++)
        if (!(d[i] = strdup(v[i] ? v[i] : ""))) {
            pd_strv_free(d, n);
            return NULL;
        }
    return d;
}

/* Optimal string alignment distance of a and b (case ignored), or max + 1 once it exceeds
 * max; the strings are names (bounded to 64 characters here). */
static int osa_distance(const char *a, const char *b, int max) {
    enum { N = 65 };
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la >= N || lb >= N) return max + 1;
    if (la - lb > max || lb - la > max) return max + 1;
    int d[N][N];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++) {
        for (int j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            int v = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < v) v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) && tolower((unsigned char)a[i - 2]) == cb &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[la][lb] > max ? max + 1 : d[la][lb];
}

const char *pd_suggest(const char *word, const char *const *words) {
    const char *best = NULL;
    int best_d = 3, lw = (int)strlen(word);
    for (int i = 0; words && words[i]; i++) {
        if (!strcmp(word, words[i])) return NULL;
        int d = osa_distance(word, words[i], 2);
        int lc = (int)strlen(words[i]), m = lw < lc ? lw : lc;
        if (m >= 4 && !strncasecmp(word, words[i], (size_t)m) && d > 1) d = 1;
        if (d < best_d) {
            best_d = d;
            best = words[i];
        }
    }
    return best && best_d * 2 <= lw ? best : NULL;
}

double pd_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
