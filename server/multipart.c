/* multipart.c - multipart/form-data from a whole body: see multipart.h. */
#include "multipart.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define HEADERS_MAX (8 * 1024)

int pd_multipart_boundary(const char *ct, char *out, size_t cap) {
    const char *p = strchr(ct, ';');
    while (p) {
        p++;
        while (*p == ' ' || *p == '\t') p++;
        const char *eq = strchr(p, '='), *semi = strchr(p, ';');
        if (eq && (!semi || eq < semi) && eq - p == 8 && !strncasecmp(p, "boundary", 8)) {
            const char *v = eq + 1, *e;
            if (*v == '"') {
                v++;
                e = strchr(v, '"');
                if (!e) return -1;
            } else {
                e = v + strcspn(v, "; \t");
            }
            size_t n = (size_t)(e - v);
            if (n == 0 || n > PD_MP_BOUNDARY_MAX || n + 1 > cap) return -1;
            memcpy(out, v, n);
            out[n] = 0;
            return (int)n;
        }
        p = semi;
    }
    return -1;
}

/* The name parameter of a Content-Disposition value (v, n bytes) into name (cap bytes). 0, or
 * -1 with err filled. */
static int disposition(const char *v, size_t n, char *name, size_t cap, char *err, size_t errlen) {
    const char *e = v + n, *p = v;
    while (p < e && (*p == ' ' || *p == '\t')) p++;
    const char *t = p;
    while (p < e && *p != ';' && *p != ' ' && *p != '\t') p++;
    if (p - t != 9 || strncasecmp(t, "form-data", 9)) {
        snprintf(err, errlen, "a part whose Content-Disposition is not form-data");
        return -1;
    }
    name[0] = 0;
    int have = 0;
    while (p < e) {
        while (p < e && (*p == ';' || *p == ' ' || *p == '\t')) p++;
        const char *k = p;
        while (p < e && *p != '=' && *p != ';') p++;
        size_t kl = (size_t)(p - k);
        while (kl && (k[kl - 1] == ' ' || k[kl - 1] == '\t')) kl--;
        if (p >= e || *p != '=') continue; /* a parameter without a value: ignored */
        p++;
        while (p < e && (*p == ' ' || *p == '\t')) p++;
        char val[256];
        size_t vl = 0;
        int bad = 0;
        if (p < e && *p == '"') {
            for (p++; p < e && *p != '"'; p++) {
                if (*p == '\\' && p + 1 < e) p++;
                if (*p == 0) bad = 1;
                if (vl + 1 < sizeof val) val[vl++] = *p;
                else bad = 2;
            }
            if (p >= e) {
                snprintf(err, errlen, "a Content-Disposition with an unclosed quoted string");
                return -1;
            }
            p++;
        } else {
            for (; p < e && *p != ';' && *p != ' ' && *p != '\t'; p++) {
                if (*p == 0) bad = 1;
                if (vl + 1 < sizeof val) val[vl++] = *p;
                else bad = 2;
            }
        }
        val[vl] = 0;
        if (kl == 4 && !strncasecmp(k, "name", 4)) {
            if (have) {
                snprintf(err, errlen, "a Content-Disposition with two names");
                return -1;
            }
            if (bad == 1 || vl == 0 || vl + 1 > cap || bad == 2) {
                snprintf(err, errlen, bad == 1 ? "a part name with a NUL byte" : vl == 0 ? "a part with an empty name" : "a part name too long");
                return -1;
            }
            memcpy(name, val, vl + 1);
            have = 1;
        }
    }
    if (!have) {
        snprintf(err, errlen, "a part without a name in its Content-Disposition");
        return -1;
    }
    return 0;
}

pd_status pd_multipart_parse(char *body, size_t len, const char *boundary, pd_mp_part_fn fn, void *arg, char *err,
                             size_t errlen) {
    char dash[PD_MP_BOUNDARY_MAX + 5]; /* "\r\n--" boundary */
    size_t bl = strlen(boundary);
    if (bl == 0 || bl > PD_MP_BOUNDARY_MAX) return pd_err(err, errlen, PD_ERR_INVALID, "multipart/form-data: a bad boundary");
    snprintf(dash, sizeof dash, "\r\n--%s", boundary);
    size_t dl = bl + 2; /* "--" boundary */
    const char *end = body + len;
    char *p;
    if (len >= dl && !memcmp(body, dash + 2, dl)) {
        p = body;
    } else {
        p = memmem(body, len, dash, dl + 2);
        if (!p) return pd_err(err, errlen, PD_ERR_INVALID, "multipart/form-data: no delimiter with the boundary of the Content-Type");
        p += 2;
    }
    int n_parts = 0;
    for (;;) {
        /* p: at a delimiter "--boundary" */
        char *q = p + dl;
        if (end - q >= 2 && q[0] == '-' && q[1] == '-') break; /* the close delimiter; an epilogue may follow */
        while (q < end && (*q == ' ' || *q == '\t')) q++;
        if (end - q < 2 || q[0] != '\r' || q[1] != '\n')
            return pd_err(err, errlen, PD_ERR_INVALID, "multipart/form-data: a delimiter line that does not end with CRLF");
        char *h = q + 2, *hend, *data;
        if (end - h >= 2 && h[0] == '\r' && h[1] == '\n') {
            hend = h;
            data = h + 2;
        } else {
            hend = memmem(h, (size_t)(end - h) < HEADERS_MAX + 4 ? (size_t)(end - h) : HEADERS_MAX + 4, "\r\n\r\n", 4);
            if (!hend)
                return pd_err(err, errlen, PD_ERR_INVALID, end - h > HEADERS_MAX ? "multipart/form-data: a part's headers exceed 8 KiB"
                                                                                  : "multipart/form-data: truncated in a part's headers");
            data = hend + 4;
        }
        char name[128];
        int have = 0;
        for (char *l = h; l < hend;) {
            char *le = memmem(l, (size_t)(hend - l), "\r\n", 2);
            if (!le) le = hend;
            char *colon = memchr(l, ':', (size_t)(le - l));
            if (!colon) return pd_err(err, errlen, PD_ERR_INVALID, "multipart/form-data: a part header line without ':'");
            if (colon - l == 19 && !strncasecmp(l, "Content-Disposition", 19)) {
                if (have) return pd_err(err, errlen, PD_ERR_INVALID, "multipart/form-data: a part with two Content-Disposition headers");
                char e2[120];
                if (disposition(colon + 1, (size_t)(le - colon - 1), name, sizeof name, e2, sizeof e2))
                    return pd_err(err, errlen, PD_ERR_INVALID, "multipart/form-data: %s", e2);
                have = 1;
            }
            l = le + 2;
        }
        if (!have) return pd_err(err, errlen, PD_ERR_INVALID, "multipart/form-data: a part without Content-Disposition");
        char *de = memmem(data, (size_t)(end - data), dash, dl + 2);
        if (!de) return pd_err(err, errlen, PD_ERR_INVALID, "multipart/form-data: truncated (no delimiter after a part)");
        *de = 0;
        n_parts++;
        if (fn(arg, name, data, (size_t)(de - data), err, errlen)) return PD_ERR_INVALID;
        p = de + 2;
    }
    if (n_parts == 0) return pd_err(err, errlen, PD_ERR_INVALID, "multipart/form-data: no parts");
    return PD_OK;
}
