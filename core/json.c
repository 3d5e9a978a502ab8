/* json.c - strict parsing and typed, range-checked reads of JSON values. See json.h. */
#include "json.h"

#include "fs.h"

#include <math.h>
#include <string.h>

pd_status pd_json_parse(const char *text, size_t len, cJSON **out, char *err, size_t errlen) {
    *out = NULL;
    if (len == 0) return pd_err(err, errlen, PD_ERR_INVALID, "empty input; expected a JSON value");
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!v) {
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        return pd_err(err, errlen, PD_ERR_INVALID, "malformed JSON near byte %zu", at);
    }
    /* cJSON stops after the first value: anything but whitespace after it is an error. */
    for (const char *p = end; p && p < text + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            cJSON_Delete(v);
            return pd_err(err, errlen, PD_ERR_INVALID, "malformed JSON: unexpected data after the value at byte %zu", (size_t)(p - text));
        }
    }
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
