/* json.c - strict parsing and typed, range-checked reads of JSON values. See json.h. */
#include "json.h"

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
