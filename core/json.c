/* json.c - strict parsing and typed, range-checked reads of JSON values. See json.h. */
#include "json.h"

#include "fs.h"

#include <math.h>
#include <string.h>

/* ==== Strict reading ==== */

/* What cJSON allocates for a string of n bytes: malloc(n + 1), in glibc chunks of 16 bytes
 * with an 8-byte header, 32 at least. */
static size_t string_cost(size_t n) {
    size_t c = (n + 1 + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

#define NODE_COST 80 /* sizeof(cJSON) = 64 in a chunk of 80 */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits at p (p + 4 <= e checked by the caller); -1 if one is not hex. */
static long hex4(const unsigned char *p) {
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

pd_status pd_json_check(const char *text, size_t len, pd_json_stats *out, char *err, size_t errlen) {
    const unsigned char *s = (const unsigned char *)text, *p = s, *e = s + len;
    unsigned char stack[(PD_JSON_MAX_DEPTH + 7) / 8]; /* bit set: the container at that depth is an object */
    int depth = 0;
    pd_json_stats st = {0, 0, 0, 0};
    const char *why = "";
    /* The grammar as a loop over values: after a value, the enclosing container decides what
     * may follow (',' or its close); want_key: inside an object, a member name comes next. */
    enum { VALUE, AFTER } state = VALUE;
    int want_key = 0;
#define WS() while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++
#define FAIL(msg) do { why = msg; goto bad; } while (0)
    for (;;) {
        WS();
        if (state == VALUE) {
            if (p == e) FAIL(depth ? "unexpected end of the text" : "empty input; expected a JSON value");
            if (want_key && *p != '"') FAIL("expected a member name in double quotes");
            if (*p == '{' || *p == '[') {
                if (depth >= PD_JSON_MAX_DEPTH) FAIL("nested deeper than 1000 levels");
                int obj = *p == '{';
                if (obj) stack[depth / 8] |= (unsigned char)(1u << (depth % 8));
                else stack[depth / 8] &= (unsigned char)~(1u << (depth % 8));
                depth++;
                if (depth > st.depth) st.depth = depth;
                st.values++;
                st.cost += NODE_COST;
                p++;
                WS();
                if (p < e && *p == (obj ? '}' : ']')) { /* empty container */
                    p++;
                    depth--;
                    state = AFTER;
                    continue;
                }
                want_key = obj;
                continue;
            }
            if (*p == '"') {
                p++;
                size_t n = 0; /* decoded bytes */
                for (;;) {
                    if (p == e) FAIL("unterminated string");
                    unsigned c = *p;
                    if (c == '"') { p++; break; }
                    if (c < 0x20) FAIL("a control character in a string must be escaped");
                    if (c == '\\') {
                        if (p + 1 >= e) FAIL("unterminated string");
                        unsigned x = p[1];
                        if (x == 'u') {
                            if (p + 6 > e) FAIL("\\u needs four hex digits");
                            long cp = hex4(p + 2);
                            if (cp < 0) FAIL("\\u needs four hex digits");
                            p += 6;
                            if (cp == 0) FAIL("\\u0000 (a NUL character) is not accepted in strings");
                            if (cp >= 0xDC00 && cp <= 0xDFFF) FAIL("a low surrogate escape without a high one before it");
                            if (cp >= 0xD800 && cp <= 0xDBFF) {
                                long lo = p + 6 <= e && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
                                if (lo < 0xDC00 || lo > 0xDFFF) FAIL("a high surrogate escape without a low one after it");
                                p += 6;
                                n += 4;
                            } else n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
                            continue;
                        }
                        if (!strchr("\"\\/bfnrt", (int)x) || x == 0) FAIL("an unknown escape in a string");
                        p += 2;
                        n++;
                        continue;
                    }
                    if (c < 0x80) {
                        p++;
                        n++;
                        continue;
                    }
                    size_t k = pd_utf8_check((const char *)p, (size_t)(e - p) < 4 ? (size_t)(e - p) : 4);
                    if (k == 0) FAIL("invalid UTF-8 in a string");
                    /* k > 0: the first character is valid; step over it */
                    size_t w = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
                    p += w;
                    n += w;
                }
                st.strings++;
                st.cost += string_cost(n);
                if (want_key) {
                    WS();
                    if (p == e || *p != ':') FAIL("expected ':' after a member name");
                    p++;
                    want_key = 0;
                    continue; /* the member's value */
                }
                st.values++;
                st.cost += NODE_COST;
                state = AFTER;
                continue;
            }
            if (*p == '-' || (*p >= '0' && *p <= '9')) {
                if (*p == '-') p++;
                if (p == e || *p < '0' || *p > '9') FAIL("a number needs a digit after '-'");
                if (*p == '0') {
                    p++;
                    if (p < e && *p >= '0' && *p <= '9') FAIL("a number must not have leading zeros");
                } else {
                    while (p < e && *p >= '0' && *p <= '9') p++;
                }
                if (p < e && *p == '.') {
                    p++;
                    if (p == e || *p < '0' || *p > '9') FAIL("a number needs a digit after '.'");
                    while (p < e && *p >= '0' && *p <= '9') p++;
                }
                if (p < e && (*p == 'e' || *p == 'E')) {
                    p++;
                    if (p < e && (*p == '+' || *p == '-')) p++;
                    if (p == e || *p < '0' || *p > '9') FAIL("a number needs a digit in its exponent");
                    while (p < e && *p >= '0' && *p <= '9') p++;
                }
                st.values++;
                st.cost += NODE_COST;
                state = AFTER;
                continue;
            }
            static const char *const lit[3] = {"true", "false", "null"};
            int ok = 0;
            for (int i = 0; i < 3 && !ok; i++) {
                size_t n = strlen(lit[i]);
                if ((size_t)(e - p) >= n && !memcmp(p, lit[i], n)) {
                    p += n;
                    ok = 1;
                }
            }
            if (!ok) FAIL("expected a JSON value");
            st.values++;
            st.cost += NODE_COST;
            state = AFTER;
            continue;
        }
        /* AFTER a value */
        if (depth == 0) {
            if (p != e) FAIL("unexpected data after the value");
            break;
        }
        int obj = (stack[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1;
        if (p == e) FAIL("unexpected end of the text");
        if (*p == ',') {
            p++;
            state = VALUE;
            want_key = obj;
            continue;
        }
        if (*p == (obj ? '}' : ']')) {
            p++;
            depth--;
            continue;
        }
        FAIL(obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
#undef WS
#undef FAIL
    if (out) *out = st;
    return PD_OK;
bad:
    return pd_err(err, errlen, PD_ERR_INVALID, "malformed JSON at byte %zu: %s", (size_t)(p - s), why);
}

pd_status pd_json_parse_failure(const char *text, size_t len) {
    return pd_json_check(text, len, NULL, NULL, 0) == PD_OK ? PD_ERR_NOMEM : PD_ERR_FORMAT;
}

pd_status pd_json_parse(const char *text, size_t len, cJSON **out, char *err, size_t errlen) {
    *out = NULL;
    pd_json_stats st;
    pd_status rc = pd_json_check(text, len, &st, err, errlen);
    if (rc) return rc;
    if (st.cost > PD_JSON_COST(len))
        return pd_err(err, errlen, PD_ERR_TOO_LARGE,
                      "%zu JSON values in %zu bytes would take %zu MiB to parse (the limit is 8 bytes per byte + 4 MiB)",
                      st.values, len, st.cost >> 20);
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!v) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory parsing %zu bytes of JSON", len);
    *out = v;
    return PD_OK;
}

pd_status pd_json_read_file(const char *path, size_t max, cJSON **out, char *err, size_t errlen) {
    char *buf = NULL;
    size_t len = 0;
    *out = NULL;
    pd_status st = pd_read_file(path, max, &buf, &len, err, errlen);
    if (st) return st;
    char e2[128];
    st = pd_json_parse(buf, len, out, e2, sizeof e2);
    free(buf);
    if (st == PD_ERR_INVALID) return pd_err(err, errlen, PD_ERR_FORMAT, "%s: %s", path, e2);
    if (st) return pd_err(err, errlen, st, "%s: %s", path, e2);
    return PD_OK;
}

const cJSON *pd_json_get(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return v && !cJSON_IsNull(v) ? v : NULL;
}

pd_status pd_json_known(const cJSON *o, const char *where, const char *what, const char *const *allowed, char *err,
                        size_t errlen) {
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++) ok = it->string && !strcmp(it->string, allowed[i]);
        if (ok) continue;
        char list[1024];
        size_t k = 0;
        list[0] = 0;
        for (int i = 0; allowed[i] && k < sizeof list; i++)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", allowed[i]);
        const char *near = it->string ? pd_suggest(it->string, allowed) : NULL;
        if (near)
            return pd_err(err, errlen, PD_ERR_INVALID, "%s%s: unknown %s; did you mean \"%s\"? (known: %s)", where, it->string, what,
                          near, list);
        return pd_err(err, errlen, PD_ERR_INVALID, "%s%s: unknown %s (known: %s)", where, it->string ? it->string : "?", what, list);
    }
    return PD_OK;
}

pd_status pd_json_bool(const cJSON *o, const char *key, const char *where, int *out, char *err, size_t errlen) {
    const cJSON *v = pd_json_get(o, key);
    if (!v) return PD_OK;
    if (!cJSON_IsBool(v)) return pd_err(err, errlen, PD_ERR_INVALID, "%s%s must be true or false", where, key);
    *out = cJSON_IsTrue(v);
    return PD_OK;
}

pd_status pd_json_str(const cJSON *o, const char *key, const char *where, const char **out, char *err, size_t errlen) {
    const cJSON *v = pd_json_get(o, key);
    if (!v) return PD_OK;
    if (!cJSON_IsString(v) || !v->valuestring) return pd_err(err, errlen, PD_ERR_INVALID, "%s%s must be a string", where, key);
    *out = v->valuestring;
    return PD_OK;
}

pd_status pd_json_long(const cJSON *o, const char *key, const char *where, long lo, long hi, pd_status range_st, long *out,
                       char *err, size_t errlen) {
    const cJSON *v = pd_json_get(o, key);
    if (!v) return PD_OK;
    double x = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(x) || x != floor(x)) return pd_err(err, errlen, PD_ERR_INVALID, "%s%s must be an integer", where, key);
    /* compared as doubles: converting an out-of-range double to long would be undefined */
    if (x < (double)lo) {
        if (lo == 1) return pd_err(err, errlen, range_st, "%s%s must be > 0 (got %.15g)", where, key, x);
        return pd_err(err, errlen, range_st, "%s%s must be >= %ld (got %.15g)", where, key, lo, x);
    }
    if (x > (double)hi) return pd_err(err, errlen, range_st, "%s%s must be <= %ld (got %.15g)", where, key, hi, x);
    *out = (long)x;
    return PD_OK;
}

pd_status pd_json_int(const cJSON *o, const char *key, const char *where, int lo, int hi, pd_status range_st, int *out,
                      char *err, size_t errlen) {
    long x = *out;
    pd_status st = pd_json_long(o, key, where, lo, hi, range_st, &x, err, errlen);
    if (!st) *out = (int)x;
    return st;
}

pd_status pd_json_num(const cJSON *o, const char *key, const char *where, double lo, int lo_open, double hi,
                      pd_status range_st, double *out, char *err, size_t errlen) {
    const cJSON *v = pd_json_get(o, key);
    if (!v) return PD_OK;
    double x = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(x)) return pd_err(err, errlen, PD_ERR_INVALID, "%s%s must be a number", where, key);
    if (lo_open ? x <= lo : x < lo)
        return pd_err(err, errlen, range_st, "%s%s must be %s %g (got %g)", where, key, lo_open ? ">" : ">=", lo, x);
    if (x > hi) return pd_err(err, errlen, range_st, "%s%s must be <= %g (got %g)", where, key, hi, x);
    *out = x;
    return PD_OK;
}

/* ==== Writing ==== */

void pd_json_add(cJSON *o, const char *k, cJSON *v, int *bad) {
    if (!v || !cJSON_AddItemToObject(o, k, v)) {
        cJSON_Delete(v);
        *bad = 1;
    }
}

void pd_json_set(cJSON *o, const char *k, cJSON *v, int *bad) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, k);
    pd_json_add(o, k, v, bad);
}

char *pd_json_print(const cJSON *v) {
    char *t = cJSON_PrintUnformatted(v);
    if (!t) return NULL;
    size_t n = strlen(t), bad = 0;
    for (size_t i = pd_utf8_check(t, n); i < n; i += 1 + pd_utf8_check(t + i + 1, n - i - 1)) bad++;
    if (!bad) return t;
    /* Each bad byte becomes U+FFFD (3 bytes). */
    char *o = malloc(n + 2 * bad + 1), *q = o;
    if (o) {
        for (size_t i = 0; i < n;) {
            size_t k = pd_utf8_check(t + i, n - i);
            memcpy(q, t + i, k);
            q += k;
            i += k;
            if (i < n) {
                memcpy(q, "\xEF\xBF\xBD", 3);
                q += 3;
                i++;
            }
        }
        *q = 0;
    }
    free(t);
    return o;
}

/* Lays compact JSON out as Python's json.dumps(indent=2) does: re-indents cJSON's unformatted
 * text, whose strings and numbers are already final. */
char *pd_json_print_indented(const cJSON *v) {
    char *compact = cJSON_PrintUnformatted(v);
    if (!compact) return NULL;
    const char *s = compact;
    /* First pass: structural characters and the deepest nesting, to size the output. */
    size_t n = strlen(s), depth = 0, max_depth = 0, breaks = 0;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            breaks++;
            if (++depth > max_depth) max_depth = depth;
        } else if (c == '}' || c == ']') {
            breaks++;
            depth--;
        } else if (c == ',' || c == ':') {
            breaks++;
        }
    }
    /* Each structural character adds at most a newline or space and an indent. */
    char *out = malloc(n + 2 + breaks * (2 + 2 * max_depth));
    if (!out) {
        free(compact);
        return NULL;
    }
    char *o = out;
    depth = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            *o++ = c;
            if (c == '\\') *o++ = s[++i];
            else if (c == '"') in_str = 0;
            continue;
        }
        switch (c) {
        case '"': in_str = 1; *o++ = c; break;
        case '{': case '[':
            *o++ = c;
            if (s[i + 1] == (c == '{' ? '}' : ']')) { *o++ = s[++i]; break; }
            depth++;
            *o++ = '\n';
            for (size_t k = 0; k < 2 * depth; k++) *o++ = ' ';
            break;
        case '}': case ']':
            depth--;
            *o++ = '\n';
            for (size_t k = 0; k < 2 * depth; k++) *o++ = ' ';
            *o++ = c;
            break;
        case ',':
            *o++ = c;
            *o++ = '\n';
            for (size_t k = 0; k < 2 * depth; k++) *o++ = ' ';
            break;
        case ':': *o++ = ':'; *o++ = ' '; break;
        default: *o++ = c;
        }
    }
    *o++ = '\n';
    *o = 0;
    free(compact);
    return out;
}


pd_status pd_json_write_file(const char *path, const cJSON *v, char *err, size_t errlen) {
    char *t = pd_json_print_indented(v);
    if (!t) return pd_err(err, errlen, PD_ERR_NOMEM, "%s: out of memory", path);
    pd_status st = pd_fs_write(path, t, strlen(t), err, errlen);
    free(t);
    return st;
}
