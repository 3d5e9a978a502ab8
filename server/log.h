/* log.h - the server's log: one JSON object per line on stderr, each written with a single
 * write(2) so lines from many threads never interleave. Process events carry
 * {"ts", "level", "msg", ...}; every finished request gets an access line
 * {"ts", "method", "path", "status", "adapter", "version", "tokens", "ms"} (docs/API.md, "Logs").
 * Thread-safety: every function may be called from any thread. */
#ifndef PD_LOG_H
#define PD_LOG_H

#include "common.h"

/* One event line: {"ts", "level", "msg", extra}. extra is "" or a string of further members
 * starting with ',' (already JSON). */
void pd_log(const char *level, const char *msg, const char *extra);

/* One access line. adapter NULL and version 0 are logged as null. */
void pd_log_request(const char *method, const char *path, int status, const char *adapter, int version, long tokens,
                    double seconds);

/* Appends s as a JSON string literal (quotes included) into buf at *pos (bounded by cap). */
void pd_json_escape(char *buf, size_t cap, size_t *pos, const char *s);

/* ISO 8601 UTC time with milliseconds, e.g. 2024-05-01T12:00:00.123Z. */
void pd_time_iso(char *buf, size_t cap);

#endif
