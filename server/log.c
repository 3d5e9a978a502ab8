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
    if (pos >= sizeof line) {
        pos = sizeof line - 1;
        line[pos - 2] = '}';
        line[pos - 1] = '\n';
    }
    ssize_t w = write(2, line, pos);
    (void)w;
}

void pd_log_request(const char *method, const char *path, int status, const char *adapter, int version, long tokens,
                    double seconds) {
    char line[2048];
    size_t pos = 0;
    char ts[40];
    pd_time_iso(ts, sizeof ts);
    pos += (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"method\":", ts);
    pd_json_escape(line, sizeof line, &pos, method);
    if (pos < sizeof line) pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"path\":");
    pd_json_escape(line, sizeof line, &pos, path);
    if (pos < sizeof line) pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"status\":%d,\"adapter\":", status);
    if (adapter && *adapter) pd_json_escape(line, sizeof line, &pos, adapter);
    else if (pos + 4 < sizeof line) { memcpy(line + pos, "null", 4); pos += 4; }
    if (pos < sizeof line) {
        if (version > 0) pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"version\":%d", version);
        else pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"version\":null");
    }
    if (pos < sizeof line)
        pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"tokens\":%ld,\"ms\":%.3f}\n", tokens, seconds * 1000.0);
    if (pos >= sizeof line) { /* cut: keep it one valid line */
        pos = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"status\":%d,\"ms\":%.3f,\"note\":\"log line cut\"}\n", ts,
                               status, seconds * 1000.0);
    }
    ssize_t wr = write(2, line, pos);
    (void)wr;
}
