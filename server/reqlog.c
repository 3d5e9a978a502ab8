/* reqlog.c - the access line of a request. See reqlog.h. */
#include "reqlog.h"

#include <string.h>
#include <unistd.h>

void pd_log_request(const char *request_id, const char *method, const char *path, int status, const char *adapter,
                    int version, long tokens, double seconds) {
    char line[2048];
    size_t pos = 0;
    char ts[40];
    pd_time_iso(ts, sizeof ts);
    pos += (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"request_id\":", ts);
    pd_json_escape(line, sizeof line, &pos, request_id);
    if (pos < sizeof line) pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"method\":");
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
    if (pos >= sizeof line) { /* cut: keep it one valid line (the request id is at most 128 printable bytes) */
        pos = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"request_id\":", ts);
        pd_json_escape(line, sizeof line, &pos, request_id);
        pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"status\":%d,\"ms\":%.3f,\"note\":\"log line cut\"}\n", status,
                                seconds * 1000.0);
    }
    ssize_t wr = write(2, line, pos);
    (void)wr;
}
