/* log.c - JSON log lines on stderr. See log.h. */
#include "log.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

void pd_json_escape(char *buf, size_t cap, size_t *pos, const char *s) {
    size_t p = *pos;
#define PUT(c) do { if (p + 1 < cap) buf[p] = (c); p++; } while (0)
    PUT('"');
    for (const unsigned char *u = (const unsigned char *)s; *u; u++) {
        if (*u == '"' || *u == '\\') { PUT('\\'); PUT((char)*u); }
        else if (*u == '\n') { PUT('\\'); PUT('n'); }
        else if (*u < 0x20 || *u == 0x7f || *u >= 0x80) {
            /* control bytes and anything non-ASCII (paths are not trusted to be UTF-8) */
            char hex[8];
            snprintf(hex, sizeof hex, "\\u%04x", *u);
            for (int i = 0; hex[i]; i++) PUT(hex[i]);
        } else PUT((char)*u);
    }
    PUT('"');
#undef PUT
    if (p < cap) buf[p] = 0;
    else if (cap) buf[cap - 1] = 0;
    *pos = p;
}

void pd_log_str(char *buf, size_t cap, size_t *pos, const char *key, const char *str) {
    size_t p = *pos;
    if (p >= cap) return;
    p += (size_t)snprintf(buf + p, cap - p, ",\"%s\":", key);
    if (p < cap && str) pd_json_escape(buf, cap, &p, str);
    else if (p < cap) p += (size_t)snprintf(buf + p, cap - p, "null");
    if (p < cap) *pos = p;
    else buf[*pos] = 0; /* did not fit: leave the member out */
}

void pd_log_num(char *buf, size_t cap, size_t *pos, const char *key, double num) {
    size_t p = *pos;
    if (p >= cap) return;
    /* JSON has no NaN or infinity */
    if (num != num || num > 1e300 || num < -1e300) p += (size_t)snprintf(buf + p, cap - p, ",\"%s\":null", key);
    else p += (size_t)snprintf(buf + p, cap - p, ",\"%s\":%.10g", key, num);
    if (p < cap) *pos = p;
    else buf[*pos] = 0;
}

void pd_time_iso(char *buf, size_t cap) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char b[32];
    strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%03ldZ", b, ts.tv_nsec / 1000000L);
}

void pd_log(const char *level, const char *msg, const char *extra) {
    char line[2048], ts[40];
    pd_time_iso(ts, sizeof ts);
    size_t pos = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level);
    pd_json_escape(line, sizeof line, &pos, msg);
    if (pos < sizeof line) pos += (size_t)snprintf(line + pos, sizeof line - pos, "%s}\n", extra ? extra : "");
    if (pos >= sizeof line) { /* too long: the message and level only, still one valid line */
        pos = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level);
        char cut[512];
        snprintf(cut, sizeof cut, "%s", msg);
        pd_json_escape(line, sizeof line, &pos, cut);
        pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"note\":\"log line cut\"}\n");
    }
    ssize_t w = write(2, line, pos);
    (void)w;
}
